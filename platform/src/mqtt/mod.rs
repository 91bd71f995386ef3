//! InterNode: a bus joined to buses on other hosts through an MQTT broker.
//!
//! [`MqttBridge`] joins the local bus as an ordinary client [`Node`] (as the serial bridge
//! does for a device) and the broker as an MQTT 3.1.1 client (the core's sans-IO
//! [`Session`] over a non-blocking TCP stream on the node's mio loop). Under a topic prefix
//! `P`, the bridge of node `N`:
//!
//! - publishes every machine of its bus as a retained record on `P/N/registry/ID` (an
//!   empty retained message when it leaves), and `up:RUN:CONNECTION` on `P/N/status`,
//!   whose last will is `down:CONNECTION` (`presence`: another node's will makes it absent
//!   for a grace, not gone);
//! - subscribes to every node's status and registry, and opens a port for each remote
//!   machine ([`Node::open_port`]), so that it is in the local registry and local senders
//!   reach it as any machine; when its node withdraws it or goes down, the port closes;
//! - forwards what arrives at such a port to `P/OWNER/in`, gathered with the answers owed to
//!   that node into one QoS 1 publish per loop turn (`outgoing`), and passes
//!   what arrives on its own `P/N/in` to its bus, sent from the port of the remote sender,
//!   dropping duplicates by the sender's sequence number;
//! - acknowledges a forwarded message to its sender only once the remote node's bridge
//!   answered that its bus acknowledged it, and reports a remote failure, the node going
//!   down or no answer in time to the sender as `xstate.error.delivery` (`delivery`).
//!
//! The topic layout, payloads and conflict rule are the core's
//! ([`interstate_core::mqtt::bridge`]); what is and is not guaranteed yet is in
//! `docs/internode.md`.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::io::{self, Write};
use std::net::SocketAddr;
use std::time::Duration as StdDuration;

use interstate_core::mqtt::bridge::{self, BridgeTopic, STATUS_DOWN};
use interstate_core::mqtt::{MqttError, Output, Session, State};
use interstate_core::wire::FailReason;
use interstate_core::TransportKind;
use mio::net::TcpStream;
use mio::{Interest, Token};

use crate::error::PlatformError;
use crate::node::{Node, PortMessage, DELIVERY_ERROR_EVENT, USER_TOKEN_BASE};

mod connection;
mod delivery;
mod hosts;
mod link;
mod outgoing;
mod presence;
mod registry;

pub use delivery::{AWAITING, RELAYED};
pub use hosts::{hosts_file, read_hosts};
use link::BrokerStream;
pub use link::{parse_broker_url, BrokerUrl, TlsConfig, TlsFiles, SYSTEM_CA_BUNDLE};

/// The mio token of the broker connection in the node's loop.
const BROKER: Token = Token(USER_TOKEN_BASE + 0x4d);

/// The largest packet accepted from the broker.
pub const MAX_PACKET: usize = 1024 * 1024;

/// What went wrong in the bridge.
#[derive(Debug)]
#[non_exhaustive]
pub enum BridgeError {
    /// The broker URL is not `mqtt://HOST[:PORT]` or `mqtts://HOST[:PORT]`, or it does not
    /// resolve.
    BadUrl {
        /// The URL.
        url: String,
        /// Why.
        problem: String,
    },
    /// The node name or the topic prefix cannot be part of a topic.
    BadName {
        /// The name.
        name: String,
        /// What is allowed.
        allowed: &'static str,
    },
    /// The broker refused the connection, for a reason retrying will not change.
    Refused(MqttError),
    /// TLS cannot work as configured: a CA, certificate or key file is unreadable or wrong,
    /// or the broker's certificate or the broker's answer to ours was refused.
    Tls {
        /// What is wrong and what to change.
        problem: String,
    },
    /// The bus side failed.
    Platform(PlatformError),
}

impl std::fmt::Display for BridgeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BridgeError::BadUrl { url, problem } => {
                write!(
                    f,
                    "bad broker URL '{url}': {problem} (use mqtt://HOST:PORT, or mqtts://HOST:PORT for TLS)"
                )
            }
            BridgeError::BadName { name, allowed } => write!(f, "bad name '{name}': {allowed}"),
            BridgeError::Refused(e) => write!(f, "{e}"),
            BridgeError::Tls { problem } => write!(f, "TLS: {problem}"),
            BridgeError::Platform(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for BridgeError {}

impl From<PlatformError> for BridgeError {
    fn from(e: PlatformError) -> Self {
        BridgeError::Platform(e)
    }
}

/// Parses `mqtt://HOST[:PORT]` (port 1883 by default) into the broker's addresses. For
/// `mqtts://` too, use [`parse_broker_url`] and [`MqttBridgeConfig::tls`].
pub fn parse_mqtt_url(url: &str) -> Result<Vec<SocketAddr>, BridgeError> {
    let parsed = parse_broker_url(url)?;
    if parsed.tls {
        return Err(BridgeError::BadUrl {
            url: url.into(),
            problem: "mqtts:// needs TLS settings (parse_broker_url, MqttBridgeConfig::tls)".into(),
        });
    }
    Ok(parsed.addrs)
}

/// This host's name (what the registry records say a machine runs on).
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

fn transport_name(t: TransportKind) -> &'static str {
    match t {
        TransportKind::InProcess => "in-process",
        TransportKind::UnixSocket => "unix",
        TransportKind::Fifo => "fifo",
        TransportKind::SharedMemory => "shm",
        TransportKind::Serial => "serial",
        _ => "other",
    }
}

/// Bridge settings.
#[derive(Clone, Debug)]
pub struct MqttBridgeConfig {
    /// The broker's addresses (see [`parse_mqtt_url`]).
    pub broker: Vec<SocketAddr>,
    /// This node's name: one topic level, unique among the nodes of the prefix; also the
    /// MQTT client id (a second bridge with the same name takes the session over).
    pub node_name: String,
    /// The topic prefix (see [`bridge::DEFAULT_PREFIX`]).
    pub prefix: String,
    /// Keepalive in seconds: a broker that does not answer a ping within it is left and
    /// reconnected to; the broker publishes the will after 1.5 times it of silence.
    pub keep_alive_secs: u16,
    /// Bytes of QoS 1 messages kept until the broker acknowledges them (also while it is
    /// unreachable); beyond it, messages wait in `hold`.
    pub store_bytes: usize,
    /// Messages waiting for room in the store; beyond it they fail back to their senders.
    pub hold: usize,
    /// The longest wait between reconnection attempts (the wait doubles from 100 ms).
    pub max_backoff: StdDuration,
    /// User name and password for the broker.
    pub credentials: Option<(String, String)>,
    /// How long a message sent to another node waits for that node's answer (its bus
    /// acknowledged or failed it) before it fails as `node-unreachable`. Such a failure is
    /// not confirmed: the node may still deliver it (`docs/internode.md`).
    pub ack_timeout: StdDuration,
    /// TLS (`mqtts://`): the CA, the client certificate, the name to check.
    pub tls: Option<TlsConfig>,
    /// How long another node whose connection ended (its last will) is waited for before
    /// it counts as gone: meanwhile its machines stay and messages for it wait; back in the
    /// same run, nothing fails (a broker restart). A node also starts a new run when it was
    /// away for more than half of it. Use the same on every node of a prefix
    /// (`interstate_core::mqtt::presence`, docs/internode.md).
    pub node_grace: StdDuration,
}

impl MqttBridgeConfig {
    /// Settings for node `node_name` at `broker`, with the default prefix and bounds.
    pub fn new(broker: Vec<SocketAddr>, node_name: &str) -> Self {
        MqttBridgeConfig {
            broker,
            node_name: node_name.into(),
            prefix: bridge::DEFAULT_PREFIX.into(),
            keep_alive_secs: 10,
            store_bytes: 1024 * 1024,
            hold: 4096,
            max_backoff: StdDuration::from_secs(5),
            credentials: None,
            ack_timeout: StdDuration::from_secs(60),
            tls: None,
            node_grace: StdDuration::from_millis(presence::DEFAULT_NODE_GRACE_MS),
        }
    }
}

/// Counters of a bridge.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MqttBridgeStats {
    /// Messages from this bus forwarded to another node.
    pub forwarded: u64,
    /// Messages from other nodes passed to this bus.
    pub delivered: u64,
    /// Messages from other nodes dropped as duplicates (QoS 1 redelivery).
    pub duplicates: u64,
    /// Messages reported back to their local sender as undeliverable.
    pub failed_back: u64,
    /// Messages from other nodes that could not be passed on (logged).
    pub dropped_in: u64,
    /// Connections to the broker made.
    pub connects: u64,
    /// Registry records published (additions, changes and removals).
    pub records_published: u64,
}

/// The broker connection's state.
enum Link {
    /// Not connected; the next attempt is due then.
    Down { retry_at: std::time::Instant },
    /// TCP connect in progress.
    Opening(TcpStream),
    /// TCP up (TLS on it when configured), MQTT session on it.
    Up(BrokerStream),
}

struct Tx<'a>(&'a mut Vec<u8>);

impl Output for Tx<'_> {
    fn send(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
    }
}

/// The node a port stands for a machine of (see `MqttBridge::owner_of`), from the bridge's
/// maps borrowed apart.
fn owner_in<'a>(
    ports: &'a HashMap<String, String>,
    aliases: &'a HashMap<String, (String, String)>,
    port: &str,
) -> Option<&'a str> {
    ports
        .get(port)
        .or_else(|| aliases.get(port).map(|(node, _)| node))
        .map(String::as_str)
}

/// Why a message for another node waits in the bridge.
enum Held {
    /// Its node is not ready: absent, or its status not known on this connection yet (or
    /// its sender's record is not published yet). Later messages for the node wait too.
    Node(String),
    /// The MQTT session's store is full: everything waits.
    Store,
}

/// A bus joined to other nodes' buses through an MQTT broker (see the module docs).
pub struct MqttBridge {
    node: Node,
    config: MqttBridgeConfig,
    host: String,
    link: Link,
    backoff: StdDuration,
    session: Session<Box<[u8]>>,
    rx: Vec<u8>,
    tx: Vec<u8>,
    readable: bool,
    /// Local machines as last published: id -> record bytes.
    published: HashMap<String, Vec<u8>>,
    last_registry_scan: std::time::Instant,
    /// The registry's change count when a scan last published all of it (a scan of an
    /// unchanged registry is skipped: see `publish_registry`).
    registry_published_at: Option<u64>,
    /// Remote machine id -> the nodes claiming it.
    claims: HashMap<String, BTreeSet<String>>,
    /// Remote machine id -> the node whose machine this node's port stands for.
    ports: HashMap<String, String>,
    /// Nodes whose status is `down` (their claims do not count).
    down: HashSet<String>,
    /// Conflicts already reported, so that each is logged once: (id, losing node).
    conflicts_told: HashSet<(String, String)>,
    /// Ports `NODE/ID` for each remote machine, whichever node keeps `ID` here:
    /// alias -> (node, id). See `registry::settle_alias`.
    aliases: HashMap<String, (String, String)>,
    /// The host of each remote machine as its node's record says: (node, id) -> host.
    remote_hosts: HashMap<(String, String), String>,
    /// Whether the ports changed since the hosts file was written (`hosts`).
    hosts_dirty: bool,
    /// Messages waiting for room in the session's store.
    waiting: VecDeque<PortMessage>,
    /// The messages of a round of `read_ports`, kept to be reused.
    read_buf: Vec<PortMessage>,
    /// What one read from the broker's socket goes into, kept to be reused.
    read_chunk: Vec<u8>,
    /// Whether the broker connection is watched for room to write (only while `tx` holds
    /// what the socket did not take: an edge for every acknowledged write would wake the
    /// loop once more per message).
    write_interest: bool,
    subscribed: bool,
    /// A message from another node was passed to a machine of this process: its outbox is
    /// routed before the ports are read (`pump`).
    routed_here: bool,
    /// The end-to-end acknowledgement's tables.
    delivery: delivery::Delivery,
    /// This node's run and connection, and the other nodes' (`presence`).
    presence: presence::Presences,
    stats: MqttBridgeStats,
    log: Box<dyn FnMut(&str)>,
    scratch: Vec<u8>,
}

impl MqttBridge {
    /// A bridge between the bus `node` joined and the broker of `config`. The broker is
    /// connected to from the loop ([`run_once`](Self::run_once)), again after every loss.
    pub fn new(mut node: Node, config: MqttBridgeConfig) -> Result<Self, BridgeError> {
        if !bridge::valid_node_name(&config.node_name) {
            return Err(BridgeError::BadName {
                name: config.node_name.clone(),
                allowed:
                    "a node name is 1 to 64 bytes without '/', '+', '#' and not starting with '$'",
            });
        }
        if !bridge::valid_prefix(&config.prefix) {
            return Err(BridgeError::BadName {
                name: config.prefix.clone(),
                allowed:
                    "a prefix is a topic without '+', '#', not starting with '$' or ending with '/'",
            });
        }
        let store = vec![0u8; config.store_bytes.max(4096)].into_boxed_slice();
        // A message to a remote machine is acknowledged once its node answered (see
        // `delivery`), never because the bridge waited for room on this bus meanwhile.
        node.watch_port_acks(true);
        node.hold_port_acks(true);
        Ok(MqttBridge {
            node,
            host: host_name(),
            link: Link::Down {
                retry_at: std::time::Instant::now(),
            },
            backoff: StdDuration::from_millis(100),
            session: Session::new(store),
            rx: Vec::new(),
            tx: Vec::new(),
            readable: false,
            published: HashMap::new(),
            last_registry_scan: std::time::Instant::now(),
            registry_published_at: None,
            claims: HashMap::new(),
            ports: HashMap::new(),
            down: HashSet::new(),
            conflicts_told: HashSet::new(),
            aliases: HashMap::new(),
            remote_hosts: HashMap::new(),
            hosts_dirty: false,
            waiting: VecDeque::new(),
            read_buf: Vec::new(),
            read_chunk: Vec::new(),
            write_interest: true,
            subscribed: false,
            routed_here: false,
            delivery: delivery::Delivery::new(),
            presence: presence::Presences::new(&config),
            stats: MqttBridgeStats::default(),
            log: Box::new(crate::logging::bridge_line(crate::logging::MQTT)),
            scratch: vec![0; 4096],
            config,
        })
    }

    /// Where log lines go instead of the `log` facade (target `interstate::mqtt`):
    /// connections, conflicts, dropped messages.
    pub fn set_logger(&mut self, f: impl FnMut(&str) + 'static) {
        self.log = Box::new(f);
    }

    /// The node the bridge joined the bus with.
    pub fn node(&mut self) -> &mut Node {
        &mut self.node
    }

    /// Counters.
    pub fn stats(&self) -> MqttBridgeStats {
        self.stats
    }

    /// Messages to other nodes without an answer yet: waiting for room in the MQTT
    /// session's store, or published and waiting for the remote node's answer (its bus
    /// acknowledged or failed them). Not counted: those still unread in the ports (see
    /// `Node::port_pending`).
    pub fn unanswered(&self) -> usize {
        self.delivery.awaiting.pending() + self.waiting.len()
    }

    /// Whether the MQTT session is up.
    pub fn connected(&self) -> bool {
        self.session.state() == State::Connected
    }

    /// The node a port stands for a machine of: a remote machine's id, or its `NODE/ID`.
    fn owner_of(&self, port: &str) -> Option<&str> {
        owner_in(&self.ports, &self.aliases, port)
    }

    /// The remote machines this bus reaches through the bridge: (id, node).
    pub fn remote_machines(&self) -> impl Iterator<Item = (&str, &str)> {
        self.ports.iter().map(|(id, n)| (id.as_str(), n.as_str()))
    }

    fn log(&mut self, what: &str) {
        let line = format!("mqtt-bridge {}: {what}", self.config.node_name);
        (self.log)(&line);
    }

    /// Runs one iteration: waits for the bus, the broker or a timer (at most `timeout`),
    /// then moves everything that is ready. Fails only when the broker refused the
    /// connection for a reason retrying cannot change (credentials, client id) or the bus
    /// side failed.
    pub fn run_once(&mut self, timeout: Option<StdDuration>) -> Result<(), BridgeError> {
        let mut timeout = timeout.unwrap_or(StdDuration::from_millis(100));
        if !self.tx.is_empty()
            || self.readable
            || matches!(&self.link, Link::Opening(_))
            || matches!(&self.link, Link::Up(s) if s.wants_write())
        {
            timeout = timeout.min(StdDuration::from_millis(5));
        }
        if let Link::Down { retry_at } = self.link {
            timeout = timeout.min(retry_at.saturating_duration_since(std::time::Instant::now()));
        }
        // The registry is compared with what was published every 20 ms at most.
        timeout = timeout.min(StdDuration::from_millis(20));
        // Answers gathered for another node leave at their deadline.
        if let Some(due) = self.outgoing_deadline() {
            let ms = due.as_millis().saturating_sub(self.node.now().as_millis());
            timeout = timeout.min(StdDuration::from_millis(ms));
        }
        let mut readable = false;
        self.node.run_once_with(Some(timeout), &mut |ev| {
            if ev.token() == BROKER {
                readable = true;
            }
        })?;
        self.readable |= readable;
        self.pump()
    }

    /// Runs for `d`.
    pub fn run_for(&mut self, d: StdDuration) -> Result<(), BridgeError> {
        let end = std::time::Instant::now() + d;
        loop {
            let now = std::time::Instant::now();
            if now >= end {
                return Ok(());
            }
            self.run_once(Some((end - now).min(StdDuration::from_millis(50))))?;
        }
    }

    /// Stops cleanly: marks this node down for the others (as the will would), disconnects,
    /// and leaves the bus.
    pub fn shutdown(&mut self) {
        // Answers owed or gathered for other nodes go before the status that fails them.
        self.answer_acks();
        self.flush_outgoing(true);
        if self.connected() {
            let topic = self.topic(BridgeTopic::Status {
                node: &self.config.node_name,
            });
            let now = self.node.now();
            let _ =
                self.session
                    .publish(now, &topic, STATUS_DOWN, false, true, &mut Tx(&mut self.tx));
            self.session.disconnect(now, &mut Tx(&mut self.tx));
            let _ = self.flush();
        }
        let _ = std::fs::remove_file(self.hosts_path());
        self.node.shutdown();
    }

    fn hosts_path(&self) -> std::path::PathBuf {
        hosts::hosts_file(&self.node.config().socket_path(), std::process::id())
    }

    /// Rewrites the hosts file when the ports changed (see `hosts`).
    fn write_hosts(&mut self) {
        if !self.hosts_dirty {
            return;
        }
        self.hosts_dirty = false;
        let host = |node: &str, id: &str| {
            self.remote_hosts
                .get(&(node.to_string(), id.to_string()))
                .cloned()
                .unwrap_or_default()
        };
        let mut machines: HashMap<String, (String, String)> = HashMap::new();
        for (id, node) in &self.ports {
            machines.insert(id.clone(), (host(node, id), node.clone()));
        }
        for (alias, (node, id)) in &self.aliases {
            machines.insert(alias.clone(), (host(node, id), node.clone()));
        }
        if let Err(e) = hosts::write_hosts(&self.hosts_path(), std::process::id(), &machines) {
            self.log(&format!("cannot write the hosts file for ps: {e}"));
        }
    }

    fn topic(&self, t: BridgeTopic<'_>) -> String {
        let mut s = String::new();
        // Writing to a String cannot fail.
        let _ = t.write(&self.config.prefix, &mut s);
        s
    }

    /// Moves what is ready without waiting.
    pub fn pump(&mut self) -> Result<(), BridgeError> {
        self.drive_link()?;
        if self.readable {
            self.read_broker()?;
        }
        // What machines hosted here answered goes out in this turn, not the next one, in the
        // same publish as the acknowledgements owed for what they were given (ahead of it).
        if std::mem::take(&mut self.routed_here) {
            self.node.route_outboxes()?;
        }
        self.answer_acks();
        self.send_unsent();
        self.release_waiting();
        self.read_ports();
        // Messages first, then the registry: a machine that sent and then left has its
        // messages published before its record's removal, so that the receiving bridge
        // still knows the sender when they arrive.
        self.flush_outgoing(false);
        self.expire_awaiting();
        self.expire_absent();
        self.write_hosts();
        if self.connected() {
            let now = std::time::Instant::now();
            if now.duration_since(self.last_registry_scan) >= StdDuration::from_millis(20)
                && self.registry_published_at != Some(self.node.registry().changes())
            {
                self.last_registry_scan = now;
                self.publish_registry(true);
            }
        }
        let now = self.node.now();
        if let Err(e) = self.session.poll(now, &mut Tx(&mut self.tx)) {
            self.lost(&format!("{e}"));
        }
        // What the broker brought goes to the bus now, not after the next wait (up to 20 ms).
        self.node.flush();
        self.flush()
    }

    /// Publishes what waits, in order per node: a message for a node that is not ready
    /// (absent, its status not known yet on this connection) holds back only the later
    /// messages for that node, not those for the others; a full store holds back all.
    fn release_waiting(&mut self) {
        let mut held_nodes: HashSet<String> = HashSet::new();
        let mut kept = VecDeque::new();
        while let Some(m) = self.waiting.pop_front() {
            if !held_nodes.is_empty()
                && self
                    .owner_of(&m.port)
                    .is_some_and(|o| held_nodes.contains(o))
            {
                kept.push_back(m);
                continue;
            }
            match self.try_forward(m) {
                None => {}
                Some((m, Held::Node(owner))) => {
                    held_nodes.insert(owner);
                    kept.push_back(m);
                }
                Some((m, Held::Store)) => {
                    kept.push_back(m);
                    kept.append(&mut self.waiting);
                }
            }
        }
        self.waiting = kept;
    }

    fn forward(&mut self, mut m: PortMessage) {
        self.number_hosted(&mut m);
        // A failure report for a message this bridge passed on from a remote sender: it goes
        // back to the sender's node.
        if self.relayed_report(&m) {
            return;
        }
        // The sender's registry record goes to the broker before its first message, on the
        // same connection, so that the receiving bridge knows the sender when it arrives.
        // Additions only: a removal waits for the scan after every queued message went.
        if self.connected() && !self.published.contains_key(&m.from) {
            self.publish_registry(false);
        }
        if !self.waiting.is_empty() {
            return self.hold(m);
        }
        if let Some((m, _)) = self.try_forward(m) {
            self.hold(m);
        }
    }

    fn hold(&mut self, m: PortMessage) {
        if self.waiting.len() < self.config.hold {
            self.waiting.push_back(m);
        } else {
            self.fail_back(
                &m,
                FailReason::QueueFull,
                "node-unreachable: the bridge's buffer for the broker is full",
            );
        }
    }

    /// Publishes `m` to its node's inbox; gives it back (`Some`) when it must wait, and why.
    fn try_forward(&mut self, m: PortMessage) -> Option<(PortMessage, Held)> {
        let Some(owner) = owner_in(&self.ports, &self.aliases, &m.port) else {
            self.fail_back(
                &m,
                FailReason::TargetGone,
                "its node withdrew it while the message waited",
            );
            return None;
        };
        if m.seq != 0 && !self.delivery.fresh.contains(owner) {
            // The node's current run is not known yet (see `on_connected`), or it is absent
            // (`presence`).
            return Some((m, Held::Node(owner.to_string())));
        }
        if !self.published.contains_key(&m.from)
            && bridge::bridgeable_id(&m.from)
            && self.sender_hosted(&m.from)
        {
            // A machine of this process that sent before the hub confirmed its id: its
            // record is not in the registry yet, and the receiving node would refuse a
            // message from a sender it has no record of. It waits for the registry scan.
            return Some((m, Held::Node(owner.to_string())));
        }
        let node = self.delivery.node(owner, &self.config.prefix);
        self.gather_message(m, node).map(|m| (m, Held::Store))
    }

    /// Reports a message that cannot be forwarded back to its sender (through the hub, as
    /// its receiver refusing it) and acknowledges it past the report.
    fn fail_back(&mut self, m: &PortMessage, reason: FailReason, detail: &str) {
        if m.event == DELIVERY_ERROR_EVENT {
            return;
        }
        self.tell_failed(m, reason, detail);
        if !self.sender_hosted(&m.from) {
            self.node.acknowledge_port(m);
        }
    }

    fn flush(&mut self) -> Result<(), BridgeError> {
        while !self.tx.is_empty() {
            let Link::Up(stream) = &mut self.link else {
                self.tx.clear();
                return Ok(());
            };
            match stream.write(&self.tx) {
                Ok(0) => break,
                Ok(n) => {
                    self.tx.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.lost(&format!("writing to the broker: {e}"));
                    break;
                }
            }
        }
        // TLS records the socket could not take yet (the writable event brings us back).
        if let Link::Up(stream) = &mut self.link {
            if let Err(e) = stream.push_pending() {
                self.lost(&format!("writing to the broker: {e}"));
            }
        }
        // Room to write is watched only while something waits for it: the socket's room
        // grows with every acknowledged write, and each such edge would wake the loop.
        if let Link::Up(stream) = &mut self.link {
            let want = !self.tx.is_empty() || stream.wants_write();
            if want != self.write_interest {
                let interest = if want {
                    Interest::READABLE | Interest::WRITABLE
                } else {
                    Interest::READABLE
                };
                if self
                    .node
                    .poll_registry()
                    .reregister(stream.tcp(), BROKER, interest)
                    .is_ok()
                {
                    self.write_interest = want;
                }
            }
        }
        Ok(())
    }
}
