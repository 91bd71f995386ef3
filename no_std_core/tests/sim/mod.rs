//! A simulated bus: one core `Hub` and a few processes, each a `bus::Client` with a small
//! host that does what a node does with every `Incoming` and `TimeoutTodo`, wired in memory
//! on a virtual clock. No sockets, no threads, no randomness: the same calls give the same
//! run.
//!
//! - A **connection** carries frame bodies both ways, each arriving `delay` after it was
//!   written, in order (a link never reorders; messages from different senders interleave
//!   by their links' delays). What the hub queues for a connection and has not been read is
//!   bounded by `SimConfig::hub_queue`: past it the hub's `HubIo` answers `LinkFull`, and the
//!   hub stops reading the sending connection until the target has drained to a quarter
//!   (backpressure). The hub reads its connections as a node does
//!   (`interstate_core::hub::fair`): round robin from a start that moves on each turn, each
//!   up to a quantum of bytes a turn ([`READ_QUANTUM`], small enough to bind here).
//!   A connection's delay can change while it runs ([`Sim::set_delay`]).
//! - A connection can be **cut**: the client sees it at once; the hub at once, or later
//!   (a half-open link the hub has not noticed yet). What the hub had queued for it and
//!   not written goes back to the senders through `Hub::undeliverable`, as a node does.
//!   After the reconnect the client sends again everything unacknowledged, with its
//!   original sequence number: what the receiver had is delivered again to its duplicate
//!   filter (the only redelivery the protocol allows; a link never reorders).
//! - A **process** can be killed (its client is dropped with everything in it, its link
//!   closes) and restarted (a fresh client, a new pid, new sequence numbers).
//! - The **hub** can be restarted (a fresh `Hub`; every link is gone with the old one, and
//!   clients reconnect through their endpoint's backoff), optionally staying down a while.
//! - A process can hang ([`Process::frozen`]: it reads and writes nothing), write bad bytes
//!   ([`Sim::inject`]), and the clock can jump with nothing run meanwhile ([`Sim::jump`]).
//! - [`Sim::drive_until`] (and [`Sim::settle`], [`Sim::run_for`]) moves frames and fires
//!   the hub's and the clients' timeouts, instant by instant, in a fixed order.
//!
//! Every message the application sends carries a number `n` (its event is `E<n>`), so the
//! records of what was sent, delivered and reported failed can be matched afterwards.
//!
//! A process's application can also subscribe its ids to topic filters ([`Sim::subscribe`],
//! kept across restarts, asked for again with each registration as a node does) and
//! publish ([`Sim::publish`]): the host fans a publication out from its copy of the hub's
//! subscription table, one message per subscriber with one sequence number, as a node's
//! `topics` does; each copy gets its own number `n` (its event is `TOPIC\0E<n>`), so the
//! same checks hold for each (publisher, subscriber) pair.

// Each test file uses part of this module.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use interstate_core::bus::client::{Client, FrameSink};
use interstate_core::bus::{OwnerSlot, PairSlot, TopicMirror};
use interstate_core::endpoint::EndpointConfig;
use interstate_core::hub::fair::{may_resume, Deficit, PassOrder};
use interstate_core::hub::{Handled, Hub, HubConfig, HubIo, LinkFull, LinkId, PeerCredentials};
use interstate_core::request::Pending;
use interstate_core::topic::Subscription;
use interstate_core::wire::{Correlation, FailReason, Frame, RegisterStatus, LEN_PREFIX};
use interstate_core::{Duration, Instant};

mod requests;
#[allow(unused_imports)]
pub use requests::{reply_number, Outcome, Settlement, REQUESTS};

pub const UID: u32 = 1000;
/// Links the simulated hub accepts (its own included).
pub const HUB_LINKS: usize = 16;
/// Machine ids the simulated hub routes.
pub const HUB_IDS: usize = 64;

pub type SimClient = Client<Vec<u8>, Vec<PairSlot>, Vec<OwnerSlot>, 16>;
pub type SimHub = Hub<HUB_LINKS, HUB_IDS>;
/// A process's copy of the subscription table and its own subscriptions.
pub type SimTopics = TopicMirror<Vec<Subscription>, Vec<Subscription>>;

/// Sizes and timings of a simulated bus.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// How long a frame takes across a connection, each way.
    pub delay: Duration,
    /// Each client's outstanding buffer, in bytes.
    pub outstanding: usize,
    /// Each client's duplicate filter: pair and owner slots.
    pub pairs: usize,
    pub owners: usize,
    /// Bytes the hub may have queued, unread, for one connection.
    pub hub_queue: usize,
    /// Messages waiting in one process's application outbox (a machine's outbox).
    pub outbox: usize,
    /// Ids registered as durable (`RegisterDurable`): the hub keeps them across their
    /// owner's death for its hold.
    pub durable: Vec<String>,
    /// Direct ring pairs each process takes (0: none). A process that takes any reaches the
    /// hub over shared memory (the hub pairs only those).
    pub direct_pairs: usize,
    /// How long a frame takes through a direct ring.
    pub direct_delay: Duration,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            delay: Duration::from_millis(1),
            outstanding: 64 * 1024,
            pairs: 64,
            owners: 64,
            hub_queue: 64 * 1024,
            outbox: 64,
            durable: Vec::new(),
            direct_pairs: 0,
            direct_delay: Duration::from_millis(0),
        }
    }
}

/// A message the application handed to its process's client (`seq` is the number it got).
#[derive(Clone, Debug)]
pub struct Sent {
    pub n: u64,
    pub at: Instant,
    pub proc: usize,
    pub incarnation: u32,
    pub from: String,
    pub to: String,
    pub seq: u64,
}

/// A message the receiving application has (a machine took its step; a port was read).
#[derive(Clone, Debug)]
pub struct Delivery {
    pub n: u64,
    pub proc: usize,
    pub incarnation: u32,
    pub from: String,
    pub to: String,
    pub seq: u64,
    pub at: Instant,
}

/// A failure reported to the sending application.
#[derive(Clone, Debug)]
pub struct Failure {
    pub n: u64,
    pub at: Instant,
    pub proc: usize,
    pub incarnation: u32,
    pub from: String,
    pub to: String,
    pub seq: u64,
    pub reason: FailReason,
}

/// Something a process's host saw that the tests look at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Note {
    /// The hub still held an id for the previous connection (logged once).
    HeldElsewhere(usize, String),
    /// An id held elsewhere is this process's again.
    Regained(usize, String),
    /// A registration refused for good.
    Refused(usize, String, RegisterStatus),
    /// The duplicate filter was full: a message neither delivered nor acknowledged.
    FilterFull(usize, String),
    /// A message for an id this process does not host.
    Stray(usize, String),
    /// A duplicate dropped by the receiver.
    Duplicate(usize, String, u64),
    /// A message dropped as a duplicate that this incarnation of the receiver never took as
    /// new: lost with no report, unless its sender is told otherwise (`check` fails on it).
    DroppedUnseen(usize, String, u64),
}

/// What happened, for the checks.
#[derive(Default, Debug)]
pub struct Records {
    pub sent: Vec<Sent>,
    pub delivered: Vec<Delivery>,
    pub failed: Vec<Failure>,
    pub notes: Vec<Note>,
    /// The hub's log lines, by link.
    pub hub_logs: Vec<(LinkId, String)>,
    /// Messages read from direct rings (delivered or dropped as duplicates), and frames
    /// written to them.
    pub ring_reads: usize,
    pub ring_writes: usize,
    /// Direct pairs closed by a process, with the reason.
    pub ring_refusals: Vec<(usize, String)>,
    /// Connections opened, per process.
    pub connects: Vec<usize>,
    /// When the hub was restarted.
    pub hub_restarts: Vec<Instant>,
    /// Messages the hub took from their sender's link and routed to their target.
    pub routed: Vec<(u64, Instant)>,
    /// When a process's link became ready: (process, incarnation, instant).
    pub readies: Vec<(usize, u32, Instant)>,
    /// When a process was killed or lost its link other than by a hub restart.
    pub disruptions: Vec<(usize, Instant)>,
    /// Peaks seen after every instant: bytes the hub queued for one connection, a client's
    /// outstanding bytes, a client's duplicate-filter pairs.
    pub peak_hub_queue: usize,
    pub peak_outstanding: usize,
    pub peak_pairs: usize,
    /// Requests opened: (process, incarnation, request id, message number, target, at).
    pub requests: Vec<(usize, u32, u32, u64, String, Instant)>,
    /// How requests were settled (each should be once).
    pub settled: Vec<Settlement>,
    /// Replies dropped as late: (process, request id, at).
    pub late_replies: Vec<(usize, u32, Instant)>,
}

/// Bytes the simulated hub reads from one connection in a turn before the next one's turn:
/// a few of the simulation's small frames, so that the fair reading's quantum binds.
pub const READ_QUANTUM: u32 = 512;

fn event_number(event: &str) -> u64 {
    interstate_core::topic::split_publication(event)
        .1
        .strip_prefix('E')
        .and_then(|n| n.parse().ok())
        .unwrap_or(u64::MAX)
}

/// One connection between a process and the hub.
struct Conn {
    proc: usize,
    /// The hub's link for it, while the hub has it open.
    link: Option<LinkId>,
    /// The process still reads and writes it.
    client_open: bool,
    /// Client to hub, and hub to client: (arrival, body).
    up: VecDeque<(Instant, Vec<u8>)>,
    down: VecDeque<(Instant, Vec<u8>)>,
    down_bytes: usize,
    delay: Duration,
    /// The hub stopped reading it until this link has room.
    stalled_on: Option<LinkId>,
    /// Its share of the hub's reading.
    fair: Deficit,
    /// The hub notices a client-side cut at this instant.
    hub_close_at: Option<Instant>,
    /// Something was written by the client in the current turn (acks ride on it).
    wrote: bool,
}

impl Conn {
    fn push(queue: &mut VecDeque<(Instant, Vec<u8>)>, at: Instant, body: Vec<u8>) {
        // In order: a frame never overtakes one written before it on the same connection.
        let at = queue.back().map_or(at, |(last, _)| at.max(*last));
        queue.push_back((at, body));
    }
}

fn encode(frame: &Frame<'_>) -> Vec<u8> {
    let mut buf = vec![0u8; frame.encoded_len()];
    let n = frame.encode(&mut buf).expect("a frame encodes");
    buf[LEN_PREFIX..n].to_vec()
}

/// The hub's side of the connections.
struct HubSide<'a> {
    conns: &'a mut [Conn],
    rings: &'a mut Vec<direct::SimRing>,
    links: &'a [Option<usize>],
    now: Instant,
    bound: usize,
    closes: Vec<LinkId>,
    logs: Vec<(LinkId, String)>,
}

impl HubSide<'_> {
    fn queue(&mut self, link: LinkId, body: Vec<u8>) -> Result<(), LinkFull> {
        let Some(&Some(c)) = self.links.get(link as usize) else {
            return Ok(());
        };
        let conn = &mut self.conns[c];
        if conn.down_bytes + body.len() > self.bound {
            return Err(LinkFull);
        }
        conn.down_bytes += body.len();
        let at = self.now + conn.delay;
        Conn::push(&mut conn.down, at, body);
        Ok(())
    }
}

impl HubIo for HubSide<'_> {
    fn send(&mut self, link: LinkId, frame: &Frame<'_>) -> Result<(), LinkFull> {
        self.queue(link, encode(frame))
    }
    fn forward(&mut self, link: LinkId, body: &[u8]) -> Result<(), LinkFull> {
        self.queue(link, body.to_vec())
    }
    fn close(&mut self, link: LinkId, _reason: &str) {
        if link != LinkId::MAX {
            self.closes.push(link);
        }
    }
    fn open_direct(&mut self, pair: u32, a: LinkId, b: LinkId) -> bool {
        let proc_of = |l: LinkId| {
            self.links
                .get(l as usize)
                .copied()
                .flatten()
                .map(|c| self.conns[c].proc)
        };
        let (Some(pa), Some(pb)) = (proc_of(a), proc_of(b)) else {
            return false;
        };
        // A restarted hub numbers its pairs afresh.
        self.rings.retain(|r| r.pair != pair);
        self.rings.push(direct::SimRing::new(pair, pa, pb));
        true
    }
    fn log(&mut self, link: LinkId, message: &str) {
        self.logs.push((link, message.to_string()));
    }
}

/// The client's side of its connection.
struct Sink<'a> {
    conn: Option<&'a mut Conn>,
    now: Instant,
}

impl FrameSink for Sink<'_> {
    fn send_frame(&mut self, frame: &Frame<'_>) -> bool {
        self.send_body(&encode(frame))
    }
    fn send_body(&mut self, body: &[u8]) -> bool {
        let Some(conn) = self.conn.as_deref_mut() else {
            return false;
        };
        conn.wrote = true;
        let at = self.now + conn.delay;
        Conn::push(&mut conn.up, at, body.to_vec());
        true
    }
    fn has_pending(&self) -> bool {
        self.conn.as_ref().is_some_and(|c| c.wrote)
    }
}

/// One process: its client and what its host keeps.
pub struct Process {
    pub incarnation: u32,
    pub pid: u32,
    pub client: SimClient,
    /// Its machine ids (statecharts: they have a message once delivered) and its ports
    /// (they have it once read).
    pub machines: Vec<String>,
    pub ports: Vec<String>,
    conn: Option<usize>,
    /// The host's registry copy, and the process each id is on.
    pub registry: BTreeSet<String>,
    pub owners: BTreeMap<String, u32>,
    /// The direct pair held in each of the client's pair slots.
    pub rings: [Option<u32>; interstate_core::bus::MAX_DIRECT_PAIRS],
    /// Next sequence number per sending id.
    seqs: Vec<(String, u64)>,
    /// The application's sends waiting for room in the outstanding buffer: (from, to, n,
    /// correlation).
    pub outbox: VecDeque<(String, String, u64, Correlation)>,
    /// Its requests waiting for their replies (one table for all its machines).
    pub requests: Pending<REQUESTS>,
    /// Its machines answer the requests they get (at once, with a reply to the sender).
    pub answers: bool,
    /// Messages queued for ports, unread: (port, from, seq, n).
    pub port_queue: VecDeque<(String, String, u64, u64)>,
    /// The numbers of the messages this incarnation took as new (delivered, or queued for a
    /// port).
    pub accepted: BTreeSet<u64>,
    /// The first sequence number of each sending id (the clock when the process started).
    base: u64,
    /// The process does nothing at all (it reads nothing, writes nothing: hung).
    pub frozen: bool,
    /// While its sends wait for room, it acknowledges what waits unread in its ports (as
    /// `Node::send_from_port` does while it blocks).
    pub ack_unread_when_blocked: bool,
    /// It moves outstanding messages onto its link after every frame it reads, not once a
    /// turn (a host may transmit between two frames of one read).
    pub transmit_each_frame: bool,
    /// It reads at most this many frames from its link per millisecond (a slow receiver:
    /// what it cannot read waits in the hub's queue for it).
    pub reads_per_ms: Option<usize>,
    /// Frames read in the current millisecond: (that millisecond, how many).
    pub(crate) read_in: (Instant, usize),
    max_frame: u32,
    /// The bus's subscriptions as this process knows them, and its own.
    pub topics: SimTopics,
    /// The next subscription slot the publication at the head of the outbox goes to.
    fanout: usize,
}

impl Process {
    fn hosts(&self, id: &str) -> bool {
        self.machines.iter().chain(&self.ports).any(|m| m == id)
    }
}

/// The simulated bus.
pub struct Sim {
    pub now: Instant,
    pub config: SimConfig,
    pub hub: Option<SimHub>,
    hub_up_at: Option<Instant>,
    /// Hub link id -> connection.
    links: Vec<Option<usize>>,
    conns: Vec<Conn>,
    pub procs: Vec<Option<Process>>,
    /// Direct ring pairs the hub asked for.
    pub rings: Vec<direct::SimRing>,
    /// Each process's ids (machines, ports) and incarnations so far, kept across kills.
    layout: Vec<(Vec<String>, Vec<String>, u32)>,
    /// Per process: its connections' delay, when not the configured one.
    delays: Vec<Option<Duration>>,
    next_n: u64,
    /// Subscriptions each process's application makes when it starts: (process, id, filter).
    subs: Vec<(usize, String, String)>,
    /// Where the hub's next turn over the connections starts.
    order: PassOrder,
    pub rec: Records,
}

impl Sim {
    /// A bus with a hub and no processes.
    pub fn new(config: SimConfig) -> Self {
        Sim {
            now: Instant::ZERO,
            config,
            hub: Some(Self::fresh_hub()),
            hub_up_at: None,
            links: vec![None; HUB_LINKS],
            conns: Vec::new(),
            procs: Vec::new(),
            rings: Vec::new(),
            layout: Vec::new(),
            delays: Vec::new(),
            next_n: 0,
            rec: Records::default(),
            subs: Vec::new(),
            order: PassOrder::default(),
        }
    }

    fn fresh_hub() -> SimHub {
        Hub::new(HubConfig::new(UID, 1), "hub")
    }

    /// Adds a process hosting `machines` and `ports`; it connects on the next step.
    pub fn add_process(&mut self, machines: &[&str], ports: &[&str]) -> usize {
        let owned = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        self.layout.push((owned(machines), owned(ports), 0));
        self.delays.push(None);
        self.procs.push(None);
        let p = self.procs.len() - 1;
        self.start(p);
        p
    }

    fn start(&mut self, p: usize) {
        let (machines, ports, inc) = &mut self.layout[p];
        *inc += 1;
        let pid = 100 * (p as u32 + 1) + *inc;
        let c = &self.config;
        let mut client = SimClient::new(
            EndpointConfig::new(pid, "sim"),
            self.now,
            vec![0; c.outstanding],
            vec![PairSlot::default(); c.pairs],
            vec![OwnerSlot::default(); c.owners],
        );
        let mut none = Sink {
            conn: None,
            now: self.now,
        };
        for id in machines.iter().chain(ports.iter()) {
            if c.durable.contains(id) {
                client.register_durable(id, &mut none)
            } else {
                client.register(id, &mut none)
            }
            .expect("room for the ids");
        }
        client.set_direct_pairs(c.direct_pairs);
        // Like the platform's: nanoseconds of the clock when the process starts, so that a
        // restarted process numbers above its previous incarnation.
        let base = self.now.as_millis() * 1_000_000 + 1;
        let seqs = machines.iter().chain(ports.iter());
        self.procs[p] = Some(Process {
            incarnation: *inc,
            pid,
            client,
            machines: machines.clone(),
            ports: ports.clone(),
            conn: None,
            registry: machines.iter().chain(ports.iter()).cloned().collect(),
            owners: BTreeMap::new(),
            rings: [None; interstate_core::bus::MAX_DIRECT_PAIRS],
            seqs: seqs.map(|s| (s.clone(), base)).collect(),
            outbox: VecDeque::new(),
            requests: {
                // A new incarnation numbers its requests apart from the previous one's.
                let mut r = Pending::new();
                r.set_base(*inc * 1_000_000);
                r
            },
            answers: false,
            port_queue: VecDeque::new(),
            accepted: BTreeSet::new(),
            base,
            frozen: false,
            ack_unread_when_blocked: false,
            transmit_each_frame: false,
            reads_per_ms: None,
            read_in: (Instant::ZERO, 0),
            max_frame: interstate_core::wire::DEFAULT_MAX_FRAME,
            topics: TopicMirror::new(vec![Subscription::EMPTY; 64], vec![Subscription::EMPTY; 16]),
            fanout: 0,
        });
        let pr = self.procs[p].as_mut().expect("just started");
        for (_, id, filter) in self.subs.iter().filter(|s| s.0 == p) {
            // Asked for once the hub has registered the id.
            pr.topics
                .subscribe(id, filter, false, &mut none)
                .expect("a valid filter, room");
        }
    }

    /// Process `p`'s application subscribes its id `id` to `filter` (now, and whenever the
    /// process is restarted).
    pub fn subscribe(&mut self, p: usize, id: &str, filter: &str) {
        self.subs.push((p, id.to_string(), filter.to_string()));
        let now = self.now;
        let Some(pr) = self.procs[p].as_mut() else {
            return;
        };
        let registered = pr.client.registration(id)
            == Some(interstate_core::bus::policy::Registration::Registered);
        let conn = pr.conn.map(|c| &mut self.conns[c]);
        let mut sink = Sink { conn, now };
        pr.topics
            .subscribe(id, filter, registered, &mut sink)
            .expect("a valid filter, room");
    }

    /// The application of process `p` publishes from its id `from` to `topic`. `None` when
    /// the process is dead or its outbox full.
    pub fn publish(&mut self, p: usize, from: &str, topic: &str) -> Option<()> {
        let cap = self.config.outbox;
        let pr = self.procs[p].as_mut()?;
        if pr.outbox.len() >= cap {
            return None;
        }
        // (Numbered per subscriber when it is fanned out.)
        pr.outbox.push_back((
            from.to_string(),
            format!("\u{1}{topic}"),
            u64::MAX,
            Correlation::None,
        ));
        Some(())
    }

    pub fn proc(&self, p: usize) -> &Process {
        self.procs[p].as_ref().expect("a live process")
    }
    pub fn proc_mut(&mut self, p: usize) -> &mut Process {
        self.procs[p].as_mut().expect("a live process")
    }
    pub fn is_alive(&self, p: usize) -> bool {
        self.procs[p].is_some()
    }
    pub fn incarnation(&self, p: usize) -> u32 {
        self.layout[p].2
    }

    /// The process whose layout hosts `id`.
    pub fn host_of(&self, id: &str) -> Option<usize> {
        self.layout
            .iter()
            .position(|(m, ports, _)| m.iter().chain(ports).any(|x| x == id))
    }

    /// The next sequence number process `p` gives a message from `id` (`None`: none yet).
    pub fn next_seq(&self, p: usize, id: &str) -> Option<u64> {
        let pr = self.proc(p);
        pr.seqs.iter().find(|(i, _)| i == id).map(|s| s.1)
    }

    /// The next sequence number process `p` gives a message from `id`.
    pub fn set_seq(&mut self, p: usize, id: &str, seq: u64) {
        let pr = self.proc_mut(p);
        pr.seqs.retain(|(i, _)| i != id);
        pr.seqs.push((id.to_string(), seq));
    }

    /// The application of process `p` sends from its id `from` to `to`. Returns the
    /// message's number, or `None` when the process is dead or its outbox full.
    pub fn send(&mut self, p: usize, from: &str, to: &str) -> Option<u64> {
        let cap = self.config.outbox;
        let pr = self.procs[p].as_mut()?;
        if pr.outbox.len() >= cap {
            return None;
        }
        let n = self.next_n;
        self.next_n += 1;
        pr.outbox
            .push_back((from.to_string(), to.to_string(), n, Correlation::None));
        Some(n)
    }

    /// The port reader of process `p` takes its next message (the port now owes an
    /// acknowledgement for it). Returns its number.
    pub fn read_port(&mut self, p: usize) -> Option<u64> {
        let now = self.now;
        let pr = self.procs[p].as_mut()?;
        let (port, from, seq, n) = pr.port_queue.pop_front()?;
        pr.client.received_mut().handed(&port, &from, seq);
        self.rec.delivered.push(Delivery {
            n,
            proc: p,
            incarnation: pr.incarnation,
            from,
            to: port,
            seq,
            at: now,
        });
        Some(n)
    }

    /// Process `p` subscribes to monitor copies (a monitor attaches).
    pub fn subscribe_monitor(&mut self, p: usize) {
        let now = self.now;
        let Some(pr) = self.procs[p].as_mut() else {
            return;
        };
        let conn = pr.conn.map(|c| &mut self.conns[c]);
        let mut sink = Sink { conn, now };
        pr.client.subscribe_monitor(&mut sink);
    }

    /// Writes a raw frame body from process `from` into its ring with process `to` (bad
    /// input on a ring). False when they hold no pair.
    pub fn inject_ring(&mut self, from: usize, to: usize, body: &[u8]) -> bool {
        direct::inject(&mut self.rings, from, to, self.now, body)
    }

    /// The delay of process `p`'s connection, each way, from now on.
    pub fn set_delay(&mut self, p: usize, delay: Duration) {
        self.delays[p] = Some(delay);
        for c in self.conns.iter_mut().filter(|c| c.proc == p) {
            c.delay = delay;
        }
    }

    /// Kills process `p`: its client and everything in it is gone; the hub sees its link
    /// close. What it had written and the hub had not read is lost with it.
    pub fn kill(&mut self, p: usize) {
        let Some(pr) = self.procs[p].take() else {
            return;
        };
        self.rec.disruptions.push((p, self.now));
        // Its rings: what it wrote stays readable for the other side, until it drops them.
        for r in self.rings.iter_mut().filter(|r| r.procs.contains(&p)) {
            r.drop_side(p);
        }
        if let Some(c) = pr.conn {
            self.conns[c].client_open = false;
            self.conns[c].up.clear();
            self.hub_close(c);
        }
    }

    /// Starts process `p` again (after [`Sim::kill`]): a fresh client and pid.
    pub fn restart(&mut self, p: usize) {
        if self.procs[p].is_none() {
            self.start(p);
        }
    }

    /// Cuts process `p`'s connection. The client sees it at once; the hub after
    /// `hub_notices` (`Duration::ZERO`: at once), holding its ids meanwhile.
    pub fn cut(&mut self, p: usize, hub_notices: Duration) {
        let Some(c) = self.procs[p].as_mut().and_then(|pr| pr.conn) else {
            return;
        };
        self.rec.disruptions.push((p, self.now));
        self.client_lost(p);
        if hub_notices == Duration::ZERO {
            self.conns[c].up.clear();
            self.hub_close(c);
        } else {
            self.conns[c].hub_close_at = Some(self.now + hub_notices);
        }
    }

    /// Restarts the hub: every link goes with the old one (what it queued is lost, and no
    /// one is told); the new one listens after `down_for`.
    pub fn restart_hub(&mut self, down_for: Duration) {
        self.rec.hub_restarts.push(self.now);
        self.hub = None;
        for l in self.links.iter_mut() {
            *l = None;
        }
        for p in 0..self.procs.len() {
            if self.procs[p].as_ref().is_some_and(|pr| pr.conn.is_some()) {
                self.client_lost(p);
            }
        }
        for c in self.conns.iter_mut() {
            c.link = None;
            c.up.clear();
            c.down.clear();
            c.down_bytes = 0;
            c.hub_close_at = None;
            c.stalled_on = None;
        }
        self.hub_up_at = Some(self.now + down_for);
        if down_for == Duration::ZERO {
            self.hub_up();
        }
    }

    fn hub_up(&mut self) {
        self.hub = Some(Self::fresh_hub());
        self.hub_up_at = None;
    }

    /// The process side of a lost connection, as a node does it: the client sends again
    /// what is unacknowledged after the reconnect; the registry copy is stale.
    fn client_lost(&mut self, p: usize) {
        let now = self.now;
        let Some(pr) = self.procs[p].as_mut() else {
            return;
        };
        if let Some(c) = pr.conn.take() {
            // What the hub queued for it stays the hub's until the hub closes the link (it
            // then goes back to the senders as undeliverable).
            self.conns[c].client_open = false;
        }
        pr.client.disconnected(now);
        direct::drop_all(p, pr, &mut self.rings);
        pr.registry = pr.machines.iter().chain(&pr.ports).cloned().collect();
        pr.owners.clear();
    }

    /// Calls into the hub (if it is up) with its side of the connections, then closes
    /// the links it asked to close and keeps its log lines.
    fn with_hub<R>(&mut self, f: impl FnOnce(&mut SimHub, &mut HubSide<'_>) -> R) -> Option<R> {
        let hub = self.hub.as_mut()?;
        let mut io = HubSide {
            conns: &mut self.conns,
            rings: &mut self.rings,
            links: &self.links,
            now: self.now,
            bound: self.config.hub_queue,
            closes: Vec::new(),
            logs: Vec::new(),
        };
        let r = f(hub, &mut io);
        let (closes, logs) = (io.closes, io.logs);
        self.rec.hub_logs.extend(logs);
        for link in closes {
            if let Some(c) = self.links[link as usize] {
                if self.conns[c].client_open {
                    self.rec.disruptions.push((self.conns[c].proc, self.now));
                    self.client_lost(self.conns[c].proc);
                }
                self.hub_close(c);
            }
        }
        Some(r)
    }

    /// The hub side of a closed connection, as a node does it: the hub forgets the link, and
    /// what it had queued for it and not written goes back to the senders as failed.
    fn hub_close(&mut self, c: usize) {
        self.conns[c].hub_close_at = None;
        let Some(link) = self.conns[c].link.take() else {
            return;
        };
        // What the process wrote and the hub had not read is gone with the link.
        self.conns[c].up.clear();
        let unwritten: Vec<Vec<u8>> = self.conns[c].down.drain(..).map(|(_, b)| b).collect();
        self.conns[c].down_bytes = 0;
        self.conns[c].stalled_on = None;
        self.links[link as usize] = None;
        // The process's ids leave the registry now: a disruption for its senders.
        self.rec.disruptions.push((self.conns[c].proc, self.now));
        self.with_hub(|hub, io| {
            hub.link_closed(link, io);
            for body in unwritten {
                hub.undeliverable(&body, io);
            }
        });
    }

    /// A process connects (its endpoint asked to): to the hub if it is up.
    fn connect(&mut self, p: usize) {
        let now = self.now;
        let delay = self.delays[p].unwrap_or(self.config.delay);
        let peer = PeerCredentials {
            pid: self.proc(p).pid,
            uid: UID,
            gid: UID,
        };
        let shm = self.config.direct_pairs > 0;
        let link = self
            .with_hub(|hub, io| {
                let link = hub.link_opened(now, peer, io);
                if let (Some(l), true) = (link, shm) {
                    hub.set_transport(l, interstate_core::TransportKind::SharedMemory);
                }
                link
            })
            .flatten();
        let pr = self.procs[p].as_mut().expect("live");
        let Some(link) = link else {
            pr.client.connect_failed(now);
            return;
        };
        let c = self.conns.len();
        if self.rec.connects.len() <= p {
            self.rec.connects.resize(p + 1, 0);
        }
        self.rec.connects[p] += 1;
        self.conns.push(Conn {
            proc: p,
            link: Some(link),
            client_open: true,
            up: VecDeque::new(),
            down: VecDeque::new(),
            down_bytes: 0,
            delay,
            stalled_on: None,
            fair: Deficit::with_quantum(READ_QUANTUM),
            hub_close_at: None,
            wrote: false,
        });
        self.links[link as usize] = Some(c);
        pr.conn = Some(c);
        let mut sink = Sink {
            conn: Some(&mut self.conns[c]),
            now,
        };
        pr.client.connected(now, &mut sink);
    }

    /// The clock jumps by `d` with nothing run in between (a suspended host): every
    /// timeout due meanwhile fires late, at once.
    pub fn jump(&mut self, d: Duration) {
        self.now = self.now + d;
    }

    /// Writes a raw frame body from process `p` to the hub (bad input).
    pub fn inject(&mut self, p: usize, body: &[u8]) {
        if let Some(c) = self.proc(p).conn {
            let at = self.now + self.conns[c].delay;
            Conn::push(&mut self.conns[c].up, at, body.to_vec());
        }
    }

    /// The hub reads what has arrived on its links. Returns whether it did anything.
    fn hub_turn(&mut self) -> bool {
        let now = self.now;
        let mut any = false;
        let n = self.conns.len();
        let start = self.order.next_start(n);
        for i in 0..n {
            let c = PassOrder::link_at(i, n, start);
            if self.conns[c].hub_close_at.is_some_and(|t| t <= now) {
                self.hub_close(c);
                any = true;
            }
            self.conns[c].fair.start_turn();
            let mut dry = true;
            while let Some(link) = self.conns[c].link {
                if let Some(t) = self.conns[c].stalled_on {
                    // Resumed once the target has drained to a quarter; meanwhile the hub is
                    // told, every turn, that the link is not silent but waiting (as a node
                    // does).
                    let bound = self.config.hub_queue;
                    let drained = self.links[t as usize]
                        .is_none_or(|tc| may_resume(self.conns[tc].down_bytes, bound));
                    if !drained {
                        self.with_hub(|hub, _| hub.link_stalled(link, now));
                        break;
                    }
                    self.conns[c].stalled_on = None;
                }
                if self.conns[c].up.front().is_none_or(|f| f.0 > now) || self.hub.is_none() {
                    break;
                }
                if !self.conns[c].fair.may_take() {
                    // Its quantum is used: the others' turn; the rest in the next turn.
                    dry = false;
                    break;
                }
                let (at, body) = self.conns[c].up.pop_front().expect("a frame");
                let bytes = LEN_PREFIX + body.len();
                any = true;
                let mut routed = None;
                let handled = self.with_hub(|hub, io| {
                    // A message the hub takes from its sender's link and routes to a target.
                    if let Ok(Frame::Deliver(d)) = Frame::decode(&body) {
                        if hub.route(d.from) == Some(link) && hub.route(d.to).is_some() {
                            routed = Some(event_number(d.event));
                        }
                    }
                    let handled = hub.handle_frame(now, link, &body, io);
                    if let Handled::Stalled(_) = handled {
                        hub.link_stalled(link, now);
                    }
                    handled
                });
                if let (Some(Handled::Done), Some(n)) = (handled, routed) {
                    self.rec.routed.push((n, now));
                }
                if let Some(Handled::Stalled(t)) = handled {
                    // Not read after all: handed in again once the target has drained.
                    self.conns[c].up.push_front((at, body));
                    self.conns[c].stalled_on = Some(t);
                    dry = false;
                    break;
                }
                self.conns[c].fair.took(bytes);
            }
            self.conns[c].fair.end_turn(dry);
        }
        if self
            .hub
            .as_ref()
            .and_then(|h| h.poll_timeout())
            .is_some_and(|t| t <= now)
        {
            let closed = self.rec.hub_logs.len();
            self.with_hub(|hub, io| hub.handle_timeout(now, io));
            any |= self.rec.hub_logs.len() > closed;
        }
        any
    }
}

pub mod check;
pub mod direct;
mod drive;
mod leave;
pub use check::check;
